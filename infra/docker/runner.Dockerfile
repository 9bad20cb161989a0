# kvrag runner: `kvrag runner` (runner HTTP API, `precompute` consumer, registry heartbeat) with the
# engine. For WebGPU on NVIDIA GPUs the image carries the Vulkan loader and asks the NVIDIA container
# runtime for the graphics capability, which mounts the driver's Vulkan ICD (nvidia_icd.json) and
# libraries; without a GPU the engine runs on the wasm CPU backend (KVRAG_ENGINE_BACKEND=auto).
# It listens on all interfaces of its container (KVRAG_RUNNER_HOST=0.0.0.0) and needs KVRAG_RUNNER_TOKEN
# at run time; keep its port off public networks (compose: not published; Kubernetes: a NetworkPolicy).
# Build from the repository root: docker build -f infra/docker/runner.Dockerfile .
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-bookworm-slim AS kernels
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY gpu-runner ./gpu-runner
# compile the wasm kernels now (assemblyscript), not on the first request
RUN node gpu-runner/engine/backends/wasm/build.ts

FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    KVRAG_RUNNER_HOST=0.0.0.0 \
    KVRAG_RUNNER_PORT=8081 \
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
COPY --from=kernels /app/gpu-runner/engine/backends/wasm/dist ./gpu-runner/engine/backends/wasm/dist
COPY models ./models
RUN mkdir -p /var/lib/kvrag && chown node:node /var/lib/kvrag
USER node
EXPOSE 8081
# /readyz wants the runner credential like every route but /healthz
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8081/readyz', { headers: { authorization: 'Bearer ' + process.env.KVRAG_RUNNER_TOKEN } }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM: leave the registry, hand back the running precompute job, finish sequences for --grace-ms
CMD ["node", "bin/kvrag.js", "runner", "--grace-ms", "25000"]
