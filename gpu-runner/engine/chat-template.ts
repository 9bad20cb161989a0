// Renders the chat template from tokenizer_config.json through @huggingface/jinja. Only the template may
// write special tokens: renderPieces marks the special-token strings that came from message contents, so
// they are encoded as plain text (no template injection through `<|end|>` in a user message).
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export class ChatTemplate {
  readonly source: string;
  readonly #template: Template;
  readonly #specials: Record<string, string | null>;
  constructor(source: string, specials: { bosToken: string | null; eosToken: string | null }) {
    this.source = source;
    this.#template = new Template(source);
    this.#specials = { bos_token: specials.bosToken ?? '', eos_token: specials.eosToken ?? '' };
  }

  /** The prompt text for `messages`; with `addGenerationPrompt`, ends where the assistant's reply starts. */
  render(
    messages: readonly ChatMessage[],
    addGenerationPrompt = true,
    extra: Record<string, unknown> = {},
  ): string {
    return this.#template.render({
      ...this.#specials,
      ...extra,
      messages,
      add_generation_prompt: addGenerationPrompt,
    });
  }

  /**
   * The prompt as pieces to encode in order: `plain: false` is template output (its special-token strings
   * are specials), `plain: true` is a special-token string a message contained (encode as text).
   */
  renderPieces(
    messages: readonly ChatMessage[],
    specialStrings: readonly string[],
    addGenerationPrompt = true,
  ): { text: string; plain: boolean }[] {
    const inContent = specialStrings.filter((s) => messages.some((m) => m.content.includes(s)));
    if (inContent.length === 0) return [{ text: this.render(messages, addGenerationPrompt), plain: false }];
    // each special string found in a content gets a private-use character no content or template holds
    const stand = new Map<string, string>();
    for (let cp = 0xf0000; stand.size < inContent.length; cp++) {
      const ch = String.fromCodePoint(cp);
      if (this.source.includes(ch) || messages.some((m) => m.content.includes(ch))) continue;
      stand.set(ch, inContent[stand.size]);
    }
    const escaped = messages.map((m) => {
      let content = m.content;
      for (const [ch, s] of stand) content = content.replaceAll(s, ch);
      return { ...m, content };
    });
    const text = this.render(escaped, addGenerationPrompt);
    const out: { text: string; plain: boolean }[] = [];
    let run = '';
    for (const ch of text) {
      const s = stand.get(ch);
      if (s === undefined) {
        run += ch;
        continue;
      }
      if (run) out.push({ text: run, plain: false });
      out.push({ text: s, plain: true });
      run = '';
    }
    if (run) out.push({ text: run, plain: false });
    return out;
  }
}
