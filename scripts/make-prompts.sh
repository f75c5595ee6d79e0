#!/usr/bin/env bash
# Recorded prompts the relay plays itself (raw G.711 µ-law, 8 kHz, mono).
# Made once with Debian's espeak-ng and sox (apt-get install espeak-ng sox);
# the files are committed, so nothing here runs at build or test time.
set -euo pipefail
cd "$(dirname "$0")/../assets/prompts"
say() { # say NAME TEXT
  espeak-ng -v en-us -s 165 -w "/tmp/prompt-$1.wav" "$2"
  sox "/tmp/prompt-$1.wav" -r 8000 -c 1 -t ul "$1.ulaw" silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
  rm -f "/tmp/prompt-$1.wav"
}
say repeat "Sorry, I didn't catch that. Could you say it again?"
