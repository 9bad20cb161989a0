// Text around the model: the byte-level tokenizer through @huggingface/tokenizers, the chat template
// through @huggingface/jinja, incremental detokenisation and stop-string scanning.
import { describe, expect, it } from 'vitest';
import { ChatTemplate } from '../../gpu-runner/engine/chat-template.ts';
import { Detokenizer } from '../../gpu-runner/engine/detokenizer.ts';
import { scanStops } from '../../gpu-runner/engine/stop.ts';
import { readTokenizerFiles, TextTokenizer } from '../../gpu-runner/engine/tokenizer.ts';

const tokenizer = new TextTokenizer(
  readTokenizerFiles(new URL('../../gpu-runner/tools/tokenizer', import.meta.url).pathname),
);

describe('tokenizer and chat template', () => {
  it('encodes bytes and special tokens, and round-trips text', () => {
    const ids = tokenizer.encodeWithSpecials('<|bos|><|user|>hé<|end|>');
    expect(ids).toEqual([256, 260, 104, 0xc3, 0xa9, 264]);
    expect(tokenizer.decode(ids)).toBe('<|bos|><|user|>hé<|end|>');
    expect(tokenizer.decode(ids, true)).toBe('hé');
    expect(tokenizer.specialIds().size).toBe(9);
    expect(tokenizer.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('encodes special-token strings inside text as plain bytes, never as special ids', () => {
    const text = 'a<|/doc|>b<|end|><|assistant|>';
    const ids = tokenizer.encode(text);
    expect(ids).toEqual([...Buffer.from(text, 'utf8')]);
    expect(ids.some((id) => tokenizer.specialIds().has(id))).toBe(false);
    expect(tokenizer.decode(ids)).toBe(text);
  });

  it('renders the chat template from tokenizer_config.json', () => {
    const tpl = new ChatTemplate(tokenizer.chatTemplate!, tokenizer);
    const text = tpl.render([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ]);
    expect(text).toBe('<|bos|><|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>');
    expect(tpl.render([{ role: 'user', content: 'Hi' }], false)).toBe('<|bos|><|user|>Hi<|end|>');
  });
});

describe('incremental detokenisation', () => {
  it('never splits a UTF-8 character across deltas', () => {
    const text = 'héllo ☕ 日本語 🎉! ok';
    const d = new Detokenizer(tokenizer);
    const deltas: string[] = [];
    for (const b of Buffer.from(text, 'utf8')) {
      const s = d.push(b);
      if (s) deltas.push(s);
    }
    deltas.push(d.flush());
    expect(deltas.join('')).toBe(text);
    for (const s of deltas) expect(s).not.toContain('\uFFFD');
    // the 4-byte emoji arrives whole, in one delta
    expect(deltas).toContain('🎉');
  });

  it('skips special tokens and flushes an incomplete trailing character as U+FFFD', () => {
    const d = new Detokenizer(tokenizer);
    expect(d.push(261)).toBe('');
    expect(d.push(0x61)).toBe('a');
    expect(d.push(0xe6)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
    expect(d.text).toBe('a\uFFFD');
  });
});

describe('stop strings', () => {
  it('finds the earliest stop string and holds back a possible prefix of one', () => {
    expect(scanStops('hello wor', 0, ['world'])).toEqual({ safeEnd: 6, stopAt: -1 });
    expect(scanStops('hello world!', 6, ['world', 'lo'])).toEqual({ safeEnd: 3, stopAt: 3 });
    expect(scanStops('abc', 0, [])).toEqual({ safeEnd: 3, stopAt: -1 });
    expect(scanStops('abcX', 2, ['XY'])).toEqual({ safeEnd: 3, stopAt: -1 });
  });
});
