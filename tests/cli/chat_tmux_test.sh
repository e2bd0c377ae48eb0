#!/usr/bin/env bash
# Drives `dsv3 chat` in a real terminal (tmux), as a person would: ask, get a streamed answer,
# interrupt a long answer with Ctrl-C and keep chatting, then /exit.
# Usage: chat_tmux_test.sh DSV3_BINARY MODEL_DIR
set -euo pipefail
bin="$1"; model="$2"
session="dsv3chat$$"
log="$(mktemp)"
trap 'tmux -L "$session" kill-server 2>/dev/null || true; rm -f "$log"' EXIT

tmux -L "$session" new-session -d -s "$session" -x 200 -y 50 "$bin chat --model $model -n 100000 -t 1 2>&1; echo EXITED:\$?; sleep 5"
wait_for() {  # wait_for PATTERN SECONDS
  for _ in $(seq 1 $(( $2 * 10 ))); do
    tmux -L "$session" capture-pane -p -t "$session" -S -200 > "$log"
    grep -q -- "$1" "$log" && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$1'; screen:"; cat "$log"; return 1
}
wait_for '>>>' 30
tmux -L "$session" send-keys -t "$session" 'Hello, who are you?' Enter
sleep 2                                   # the answer is streaming (100000 tokens allowed)
tmux -L "$session" send-keys -t "$session" C-c          # stop it without leaving
wait_for '(stopped)' 30
wait_for 'decode' 10
tmux -L "$session" send-keys -t "$session" '/exit' Enter
wait_for 'EXITED:0' 30
echo "chat under tmux: ok"
