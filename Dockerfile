# callbridge: the relay as a container.
#
# Node: the current LTS (26), on Debian 13 "trixie" (glibc 2.41), where the
# upstream uWebSockets.js build for this Node loads: the image serves on the
# native edge. Without it (e.g. a build with UWS_REF=none), callbridge serves
# on node:http + ws; the first log line says which edge runs.
#
#   docker build -t callbridge .
#   docker run -p 5002:5002 -v callbridge-data:/data \
#     -e OPENAI_API_KEY=… -e TWILIO_AUTH_TOKEN=… -e PUBLIC_URL=https://your-host.example callbridge
ARG NODE_VERSION=26

# ── build: wasm + TypeScript, production dependencies, upstream uWS ──────
FROM node:${NODE_VERSION}-trixie AS build
# Upstream uWebSockets.js release (git tag; binaries for Node 22, 24, 26 from
# v20.67.0), installed from GitHub as its README says: it is not on npm.
ARG UWS_REF=v20.67.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY asconfig.json tsconfig.json ./
COPY assembly ./assembly
COPY src ./src
COPY bench ./bench
COPY bin ./bin
COPY assets ./assets
COPY agents ./agents
RUN npm run build && npm prune --omit=dev --no-audit --no-fund
RUN if [ "$UWS_REF" != none ]; then \
      npm install --no-save --omit=dev --no-audit --no-fund "uWebSockets.js@github:uNetworking/uWebSockets.js#${UWS_REF}" \
      && node -e "const u = require('uWebSockets.js'); if (!/\[native code\]/.test(String(u.App))) process.exit(1)"; \
    fi

# ── run: slim image, non-root, records on a volume ───────────────────────
FROM node:${NODE_VERSION}-trixie-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=5002 \
    CALLBRIDGE_DB=/data/callbridge.db
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/build ./build
COPY --from=build /app/bin ./bin
# Recorded prompts (hold, apology, goodbye, repeat): read at start-up.
COPY --from=build /app/assets ./assets
# Agent files: agents/eligibility.yaml is the default agent (AGENT_FILE unset); mount your own and set AGENT_FILE.
COPY --from=build /app/agents ./agents
# The console's page (plain ES modules, served as they are at /console).
COPY --from=build /app/src/console/web ./src/console/web
RUN mkdir -p /data && chown node:node /data
VOLUME /data
USER node
EXPOSE 5002
# 200 while taking calls, 503 while draining on SIGTERM (a model outage is reported in the body, not as 503).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 5002) + '/voice/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM: stop taking calls, end the live ones cleanly (records kept), exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/callbridge.js"]
CMD ["serve"]
