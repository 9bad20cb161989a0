// Row ids are uuids. A malformed id names nothing that exists, so it is answered like an unknown one: 404.
import { AppError } from '../../contracts/errors.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(v: string): boolean {
  return UUID.test(v);
}

/** The not_found error for `what` (a resource name) with id `id`. */
export const notFound = (what: string, id: string) =>
  new AppError('not_found', `${what} ${JSON.stringify(id)} not found`);
