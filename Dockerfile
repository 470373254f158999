# syntax=docker/dockerfile:1
# Image of the CAS server and its helper commands (cas serve, cas backup register, ...).
# The kubectl plugin references it by default as ghcr.io/cas-project/cas:<package version>.
#
#   docker build -t ghcr.io/cas-project/cas:0.1.0 .
#
# Three stages: production dependencies (native better-sqlite3 is compiled here), the TypeScript build,
# and a runtime stage with only node, the production node_modules and the compiled dist/.

FROM node:20-slim AS dependencies
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# node-gyp uses the headers that ship with the node image instead of downloading them.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
# --ignore-scripts skips the package's own "prepare" (tsc is a dev dependency); better-sqlite3's native
# module is then built explicitly.
RUN npm ci --omit=dev --ignore-scripts \
 && npm rebuild better-sqlite3 \
 && npm cache clean --force

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts
COPY src ./src
# Test files never enter the build context (.dockerignore); the test helpers are removed after the build.
RUN npx tsc -p tsconfig.json \
 && rm -rf dist/src/testing dist/src/kubernetes/testing

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=dependencies --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist/src ./dist/src
COPY --chown=root:root package.json ./
# The node user of node:20-slim (UID and GID 1000); the Kubernetes manifests run as this UID with a
# read-only root file system, so nothing under /app needs to be writable.
USER 1000:1000
# CAS API (HTTPS) and Prometheus metrics.
EXPOSE 8081 9091
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["serve", "--help"]
