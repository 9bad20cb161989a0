// Where raw uploads live in the blob store: under their tenant and collection, one object per document
// (named by the document id, chosen before the row is written), so concurrent identical uploads and a
// re-upload racing a delete never share, and never delete, each other's object.

/** Every upload of a tenant. */
export const tenantUploadPrefix = (tenantId: string) => `uploads/${tenantId}/`;

export const uploadPrefix = (tenantId: string, collectionId: string) =>
  `uploads/${tenantId}/${collectionId}/`;

export const uploadKey = (tenantId: string, collectionId: string, documentId: string) =>
  `${uploadPrefix(tenantId, collectionId)}${documentId}`;

/** OpenAI Files of a tenant (src/openai/files.ts); `files` is never a collection id (those are uuids). */
export const filesPrefix = (tenantId: string) => `uploads/${tenantId}/files/`;

export const fileKey = (tenantId: string, fileId: string) => `${filesPrefix(tenantId)}${fileId}`;
