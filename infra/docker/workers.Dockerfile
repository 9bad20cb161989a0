# kvrag workers: `kvrag workers` (outbox relay; ingest, precompute-done and gc consumers; artifact
# sweep) on BullMQ, with /metrics and /healthz on KVRAG_METRICS_PORT.
# Build from the repository root: docker build -f infra/docker/workers.Dockerfile .
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    KVRAG_HOST=0.0.0.0 \
    KVRAG_METRICS_PORT=9091 \
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
# the tokenizer of the served model chunks documents by tokens
COPY models ./models
RUN mkdir -p /var/lib/kvrag && chown node:node /var/lib/kvrag
USER node
EXPOSE 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9091/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/kvrag.js", "workers"]
