# kvrag API: `kvrag serve` (the Hono API plus in-process ingestion consumers) against Postgres +
# pgvector, Redis (BullMQ, runner registry) and S3, with remote runners from KVRAG_RUNNER_URLS and the
# registry. The same image runs `kvrag migrate` (compose: the `migrate` service).
# Build from the repository root: docker build -f infra/docker/api.Dockerfile .
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# production dependencies only; nothing needs an install script
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# the web console (src/console → dist/console) needs the dev dependencies (Vite, Preact) to build
FROM node:24-bookworm-slim AS console
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts && npm cache clean --force
COPY vite.config.ts ./
COPY src/console ./src/console
COPY src/routes/console-headers.ts ./src/routes/console-headers.ts
RUN npm run build

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    KVRAG_HOST=0.0.0.0 \
    KVRAG_PORT=8080 \
    KVRAG_DATA_DIR=/var/lib/kvrag
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY cli ./cli
COPY contracts ./contracts
COPY src ./src
COPY workers ./workers
COPY gpu-runner ./gpu-runner
COPY migrations ./migrations
COPY models ./models
COPY --from=console /app/dist/console ./dist/console
RUN mkdir -p /var/lib/kvrag && chown node:node /var/lib/kvrag
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/kvrag.js", "serve"]
