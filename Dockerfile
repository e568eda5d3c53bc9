# stompd image: docker build -t stompd . (docker-compose.yml builds it too).
#
# Build stage: every dependency, TypeScript compiled to dist/src.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the prepare script would compile before the sources are copied in.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

# Runtime stage: production dependencies and the compiled broker only.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# main.js reads ../../package.json for --version: it sits at /app/package.json.
COPY --from=build /app/dist/src ./dist/src
COPY deploy/healthcheck.js ./deploy/healthcheck.js

# In a container, loopback is unreachable from outside: listen on every address. Without a
# JWT key or USERS_FILE, stompd then refuses to start unless ALLOW_INSECURE_AUTH=1 says the
# unauthenticated mode is meant (see README, Authentication).
ENV HOST=0.0.0.0
# STOMP over TCP, WebSocket (/ws).
EXPOSE 61613 15674

# The image's unprivileged user; the app writes nothing to disk.
USER node

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["node", "deploy/healthcheck.js"]

# node is PID 1 and handles SIGTERM itself: stops accepting, ends sessions, exits within
# SHUTDOWN_TIMEOUT_MS (keep docker's stop timeout, 10 s by default, above it).
CMD ["node", "dist/src/main.js"]
