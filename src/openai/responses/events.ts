// The Responses API's streamed events, numbered: each is `{type, sequence_number, ...fields}` sent as one
// SSE message whose event name is its type. The order kvrag sends (OpenAI's for a file_search turn):
//
//   response.created → response.in_progress
//   [file_search] response.output_item.added (file_search_call) → response.file_search_call.in_progress
//     → .searching → .completed → response.output_item.done
//   response.output_item.added (message) → response.content_part.added (output_text)
//   → response.output_text.delta … → response.output_text.annotation.added … (one per file_citation)
//   → response.output_text.done → response.content_part.done → response.output_item.done
//   → response.completed | response.incomplete (max_output_tokens reached)
//
// A failure after response.created ends the stream with response.failed (its response carries `error`).

export interface ResponseEvent {
  type: string;
  sequence_number: number;
  [field: string]: unknown;
}

export type EventSink = (event: ResponseEvent) => Promise<void>;

export class ResponseEvents {
  #next = 0;
  readonly #sink: EventSink;
  constructor(sink: EventSink) {
    this.#sink = sink;
  }
  /** Sends one event; `fields` are copied (later changes to the objects they hold do not show). */
  emit(type: string, fields: Record<string, unknown>): Promise<void> {
    return this.#sink({ type, sequence_number: this.#next++, ...structuredClone(fields) });
  }
}
