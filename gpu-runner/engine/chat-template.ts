// Renders the chat template from tokenizer_config.json through @huggingface/jinja.
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
}
