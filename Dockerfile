# syntax=docker/dockerfile:1
# commitd: build with dev dependencies, then ship only what runs.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary is reachable.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# Dependencies first (cached while only sources change), dev dependencies
# included: the TypeScript build needs them, and they hold the service's
# better-sqlite3, fastify and pg (optional peer dependencies of the package,
# which an app using only its client or participant kit does not install).
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY ops/service-dependencies.mjs ./ops/
# The service's peers become production dependencies, so the prune keeps them.
RUN npm run build && node ops/service-dependencies.mjs && npm prune --omit=dev

FROM node:20-bookworm-slim
# Bound to every interface, commitd needs a token: without COMMITD_TOKENS (or
# COMMITD_AUTH_TOKEN) it refuses to start (exit 2). Give them at run time:
#   docker run -e COMMITD_TOKENS="client:$(openssl rand -hex 24),admin:$(openssl rand -hex 24)" ...
ENV NODE_ENV=production \
    COMMITD_HOST=0.0.0.0 \
    COMMITD_PORT=7070 \
    COMMITD_DATA_DIR=/var/lib/commitd
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY config ./config
# The command-line tool (`docker exec CONTAINER node bin/commitd.js stats`).
COPY bin ./bin
RUN mkdir -p /var/lib/commitd && chown node:node /var/lib/commitd
# The image's unprivileged user; the decision log is its only writable state.
USER node
VOLUME ["/var/lib/commitd"]
EXPOSE 7070
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.COMMITD_PORT || 7070) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself; commitd handles it
# (stop taking work, finish requests, close the log, exit 0).
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/main.js"]
