#!/usr/bin/env bash
# Builds the labelled VAD set (issue 19) from espeak-ng speech with sox, into a
# directory (default: a new temp dir) that is never committed. Prints the dir.
#
#   scripts/make-vad-set.sh [OUT_DIR]
#
# Every clip is 3 s of raw G.711 µ-law at 8 kHz (<name>.ul), what the VAD sees
# from the caller. labels.tsv has one line per clip:
#   name  kind  onset_ms  background  reference
# kind: speech | backchannel (the caller speaks from onset_ms on), or silence |
# noise | echo (no caller speech: onset_ms is -). background: silence | noise |
# echo. reference: for echo backgrounds, <name>.ref.ul, the assistant's audio
# as it was played out (the far end), aligned with the clip; the clip holds it
# leaked back at -20…-35 dB after 20–60 ms. '-' otherwise.
#
# Levels: caller speech peaks at -6…-15 dBFS, the assistant as played at -6 dBFS,
# line noise is pink noise at -58…-46 dBFS plus 60 Hz hum. Onsets are exact:
# every speech source has its leading silence trimmed (below -45 dB of peak).
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox). Deterministic:
# the same inputs give the same set.
set -euo pipefail

for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-vad-set: $tool not found (apt-get install espeak-ng sox)" >&2; exit 2; }
done

OUT=${1:-$(mktemp -d -t callbridge-vad-XXXXXX)}
mkdir -p "$OUT"
SRC="$OUT/src"
mkdir -p "$SRC"
: > "$OUT/labels.tsv"

CLIP_S=3
VOICES=(en-us en-us+f3 en-gb+m3 en-gb-x-rp+f2 en-029+m7)
RATES=(130 175 220)
CALLER=(
  "Hi, I'm calling about my insurance eligibility."
  "Yes, that's right."
  "No, my date of birth is the fourth of July."
  "Sorry, can you say that again?"
  "What about my daughter?"
  "Hello? Are you still there?"
)
BACKCHANNELS=("mm-hm" "uh-huh" "yeah" "okay" "right")
ASSISTANT=(
  "Thank you. I can check that for you, one moment please."
  "Your plan covers two visits a year at no cost."
  "Could you please confirm the member number on your card?"
  "I have found your record, and everything looks in order."
)

# Deterministic pseudo-random integer in [lo, hi] into R (no subshell, so the seed advances).
SEED=12345
rnd() {
  SEED=$(( (SEED * 1103515245 + 12345) % 2147483648 ))
  R=$(( $1 + SEED / 7 % ($2 - $1 + 1) ))
}

# speak TEXT VOICE RATE OUT.wav: 8 kHz mono int16, leading silence trimmed, peak -6 dBFS.
speak() {
  espeak-ng -v "$2" -s "$3" -w "$SRC/tmp.wav" "$1"
  sox "$SRC/tmp.wav" -r 8000 -c 1 -b 16 "$4" silence 1 0.005 -45d gain -n -6
}

# noise OUT.wav: CLIP_S of line noise: pink noise at LEVEL dBFS plus 60 Hz hum 8 dB under it.
noise() {
  local level=$2
  sox -n -r 8000 -c 1 -b 16 "$SRC/pink.wav" synth "$CLIP_S" pinknoise gain -n "$level" 2>/dev/null
  sox -n -r 8000 -c 1 -b 16 "$SRC/hum.wav" synth "$CLIP_S" sine 60 gain -n $((level - 8)) 2>/dev/null
  sox -m "$SRC/pink.wav" "$SRC/hum.wav" "$1"
}

# silence OUT.wav: CLIP_S of digital silence.
silence() { sox -n -r 8000 -c 1 -b 16 "$1" trim 0 "$CLIP_S"; }

# ulaw IN.wav OUT.ul: exactly CLIP_S, µ-law raw.
ulaw() { sox "$1" -t ul -r 8000 -c 1 "$2" pad 0 "$CLIP_S" trim 0 "$CLIP_S"; }

# background NAME KIND: writes $SRC/bg.wav; for echo, also $OUT/NAME.ref.ul; sets REF (the reference field).
background() {
  local name=$1 kind=$2
  case "$kind" in
    silence) silence "$SRC/bg.wav"; REF=- ;;
    noise) rnd 46 58; noise "$SRC/bg.wav" "-$R"; REF=- ;;
    echo)
      local a v start_ms delay_ms leak_db
      rnd 0 $((${#ASSISTANT[@]} - 1)); a=${ASSISTANT[$R]}
      rnd 0 $((${#VOICES[@]} - 1)); v=${VOICES[$R]}
      rnd 0 400; start_ms=$R; rnd 20 60; delay_ms=$R; rnd 20 35; leak_db=$R
      speak "$a" "$v" 175 "$SRC/asst.wav"
      # The far end as played, and its leak: attenuated, delayed, over line noise.
      sox "$SRC/asst.wav" "$SRC/ref.wav" pad "0.$(printf %03d "$start_ms")" 0
      ulaw "$SRC/ref.wav" "$OUT/$name.ref.ul"
      sox "$SRC/asst.wav" "$SRC/leak.wav" pad "0.$(printf %03d $((start_ms + delay_ms)))" 0 gain "-$leak_db"
      sox "$SRC/leak.wav" "$SRC/leak3.wav" pad 0 "$CLIP_S" trim 0 "$CLIP_S"
      rnd 50 58; noise "$SRC/n.wav" "-$R"
      sox -m -v 1 "$SRC/leak3.wav" -v 1 "$SRC/n.wav" "$SRC/bg.wav" trim 0 "$CLIP_S"
      REF="$name.ref.ul"
      ;;
  esac
}

# clip NAME KIND BG [TEXT VOICE RATE]: one labelled clip.
clip() {
  local name=$1 kind=$2 bg=$3
  background "$name" "$bg"
  local ref=$REF
  if [ $# -gt 3 ]; then
    local onset_ms level
    rnd 600 1400; onset_ms=$R; rnd 0 9; level=$R
    speak "$4" "$5" "$6" "$SRC/caller.wav"
    sox "$SRC/caller.wav" "$SRC/caller2.wav" pad "$((onset_ms / 1000)).$(printf %03d $((onset_ms % 1000)))" 0 gain "-$level"
    sox "$SRC/caller2.wav" "$SRC/caller3.wav" pad 0 "$CLIP_S" trim 0 "$CLIP_S"
    sox -m -v 1 "$SRC/caller3.wav" -v 1 "$SRC/bg.wav" "$SRC/mix.wav" trim 0 "$CLIP_S"
    ulaw "$SRC/mix.wav" "$OUT/$name.ul"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$onset_ms" "$bg" "$ref" >> "$OUT/labels.tsv"
  else
    ulaw "$SRC/bg.wav" "$OUT/$name.ul"
    printf '%s\t%s\t-\t%s\t%s\n' "$name" "$bg" "$bg" "$ref" >> "$OUT/labels.tsv"
  fi
}

BGS=(silence noise echo)
i=0
for v in "${VOICES[@]}"; do
  for r in "${RATES[@]}"; do
    for t in "${CALLER[@]}"; do
      clip "speech-$i" speech "${BGS[$((i % 3))]}" "$t" "$v" "$r"
      i=$((i + 1))
    done
  done
  for t in "${BACKCHANNELS[@]}"; do
    clip "backchannel-$i" backchannel "${BGS[$((i % 3))]}" "$t" "$v" 175
    i=$((i + 1))
  done
done
for k in $(seq 1 10); do clip "silence-$k" silence silence; done
for k in $(seq 1 30); do clip "noise-$k" noise noise; done
for k in $(seq 1 50); do clip "echo-$k" echo echo; done

rm -rf "$SRC"
echo "$OUT"
