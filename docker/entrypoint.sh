#!/bin/sh
# Shared entrypoint of the api, migrate, worker and beat containers: create the storage folders, run the command.
# TMPDIR sits on the storage volume so that large multipart uploads spool to disk there, not in memory.
set -eu
mkdir -p "${STORAGE_DIR:-${SYNTHAUDIT_HOME:-/data}/storage}" "${TMPDIR:-/tmp}"
exec "$@"
