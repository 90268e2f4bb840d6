#!/usr/bin/env bash
# Two robots share one policy server: internvla-serve holds the model once, batches the robots' queries,
# and each robot's policy node uses the remote backend. Here both "robots" are simulated on this machine
# (a WidowX and a Franka, each in its own ROS domain, as two robots on two networks would be); on real
# hardware run the server on the GPU box with --host 0.0.0.0 and point remote_url at it.
#
#   source scripts/env.sh && bash docs/examples/two_robots_one_server.sh [STEPS] [CHECKPOINT]
#
# CHECKPOINT empty = the untrained tiny model (its actions are noise: this shows the wiring, not skill).
# A real run dir must carry the statistics keys both robots ask for (policy_node's unnorm_key), and
# dataset_statistics below must be that run's dataset_statistics.json.
set -euo pipefail
STEPS=${1:-8}
CHECKPOINT=${2:-}
PORT=${PORT:-10093}
OUT=${OUT:-two_robots_out}
KEY=$(python -c "import secrets; print(secrets.token_hex(16))")
mkdir -p "$OUT"

if [ -n "$CHECKPOINT" ]; then
  STATS=$(python -c "from internvla_core.model.policy import resolve_checkpoint, run_dir_of as r; print(r(resolve_checkpoint('$CHECKPOINT')) / 'dataset_statistics.json')")
else
  STATS=$(python -c "from internvla_core.model import tiny_checkpoint; print(tiny_checkpoint().parents[1] / 'dataset_statistics.json')")
fi

INTERNVLA_SERVE_API_KEY=$KEY python -m internvla_core.serving --port "$PORT" --checkpoint "$CHECKPOINT" \
  --max-batch 8 --max-wait-ms 10 >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do  # wait until the model is loaded and the port answers
  python -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
  sleep 0.5
done

remote=(-p "policy_node:backend:=remote" -p "policy_node:remote_url:=ws://127.0.0.1:$PORT"
        -p "policy_node:remote_api_key:=$KEY" -p "policy_node:dataset_statistics:=$STATS"
        -p "sim:width:=160" -p "sim:height:=120")
ROS_DOMAIN_ID=41 python -m internvla_bringup.run sim_widowx --namespace arm1 --steps "$STEPS" \
  --summary "$OUT/arm1.json" "${remote[@]}" >"$OUT/arm1.log" 2>&1 &
ARM1=$!
ROS_DOMAIN_ID=42 python -m internvla_bringup.run sim_franka --namespace arm2 --steps "$STEPS" \
  --summary "$OUT/arm2.json" "${remote[@]}" >"$OUT/arm2.log" 2>&1 &
ARM2=$!
status=0
wait $ARM1 || status=$?
wait $ARM2 || status=$?
for arm in arm1 arm2; do
  python -c "import json; s = json.load(open('$OUT/$arm.json')); print('$arm', s['setup'], s['goal_result'], s['policy_chunks'], 'chunks, inference p50', s['inference_p50_s'], 's')"
done
exit $status
