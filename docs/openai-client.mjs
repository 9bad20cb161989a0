// The official `openai` SDK against kvrag, unchanged: point it at kvrag's /v1 with a tenant API key.
//   OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=kvrag_… node docs/openai-client.mjs
// Uploads a file into a new vector store, searches it, asks a question with the file_search tool (plain,
// then streamed), and deletes what it made. test/e2e/openai-platform.test.ts runs it against `kvrag serve`.
import OpenAI, { toFile } from 'openai';

const client = new OpenAI(); // reads OPENAI_BASE_URL and OPENAI_API_KEY
const [model] = (await client.models.list()).data;

const store = await client.vectorStores.create({ name: 'records' });
const file = await client.vectorStores.files.uploadAndPoll(
  store.id,
  await toFile(Buffer.from('Record 12: 7731. Record 40: 5820. Record 77: 1094.'), 'records.txt'),
  { pollIntervalMs: 200 },
);
console.log('file', file.status);

const hits = await client.vectorStores.search(store.id, { query: 'Record 40' });
console.log('search', hits.data[0].filename, hits.data[0].score.toFixed(3));

const ask = {
  model: model.id,
  input: 'Record 40:',
  tools: [{ type: 'file_search', vector_store_ids: [store.id] }],
  max_output_tokens: 8,
  temperature: 0,
};
const answer = await client.responses.create(ask);
console.log('answer', JSON.stringify(answer.output_text), answer.usage.input_tokens_details.cached_tokens);

const stream = client.responses.stream(ask);
for await (const event of stream) if (event.type === 'response.output_text.delta') process.stdout.write('.');
console.log('\nstreamed', JSON.stringify((await stream.finalResponse()).output_text));

await client.responses.delete(answer.id);
await client.vectorStores.delete(store.id);
await client.files.delete(file.id);
console.log('cleaned up');
