// Ids of the jobs whose id more than one producer must agree on (the API, the reconciler).

/** The ingest job of a document; a re-drive by workers/reconciler.ts gets an id of its own. */
export const ingestJobId = (documentId: string, redrive = 0) =>
  redrive === 0 ? `ingest-${documentId}` : `ingest-${documentId}-r${redrive}`;
