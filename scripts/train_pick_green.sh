#!/usr/bin/env bash
# The pick_green model of the Franka (the one `make demo` runs): scripts/train_task.sh with TASK=pick_green.
# Every variable train_task.sh reads (EPISODES, DART, COMMIT, STAGE1, ...) works here too.
TASK=pick_green exec bash "$(dirname "$0")/train_task.sh" "$@"
