// drizzle-kit configuration: `npm run db:generate` diffs src/db/schema.ts against migrations/ and writes
// the next numbered, journalled migration. Migrations are applied by src/db/migrate.ts (`kvrag migrate`).
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations',
  strict: true,
  verbose: true,
});
