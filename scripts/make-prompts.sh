#!/bin/sh
# Remakes the spoken prompts in assets/prompts/: raw G.711 µ-law, 8 kHz, mono,
# no header (what Twilio plays). Needs espeak-ng and sox
# (Debian/Ubuntu: apt-get install -y espeak-ng sox).
#
#   hold.ulaw     played while the model link is being restored
#   apology.ulaw  played when the link gives up, before the call ends
#   goodbye.ulaw  played to calls still live when a shutdown drain times out
#   repeat.ulaw   played when the model's responses keep failing: asks the caller to repeat
#   recording-notice.ulaw  an agent file's recording disclosure (agents/demo.yaml names it)
#
# espeak-ng writes 22.05 kHz PCM; sox band-limits it to the phone band, trims
# the synthesiser's leading and trailing silence (so the hold prompt is heard
# at once), normalises the peak to -6 dBFS, resamples to 8 kHz (high quality,
# no dither, so a rerun with the same tool versions gives the same bytes) and
# pads 200 ms of silence at the end so the prompt does not clip.
set -eu
cd "$(dirname "$0")/.."
out=assets/prompts
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

prompt() {
  espeak-ng -v en-us -s 150 -w "$tmp/$1.wav" "$2"
  sox -D "$tmp/$1.wav" -t raw -e u-law -b 8 -c 1 "$out/$1.ulaw" \
    highpass 200 lowpass 3400 silence 1 0.01 1% reverse silence 1 0.01 1% reverse \
    gain -n -6 rate -v 8000 pad 0.02 0.2
}

prompt hold "One moment, please."
prompt apology "I'm sorry, we're having technical difficulties. Please call again later. Goodbye."
prompt goodbye "We need to end this call now. Goodbye."
prompt repeat "Sorry, I didn't catch that. Could you say it again?"
prompt recording-notice "This call may be recorded. To opt out of the recording, press 9."

{
  echo "Made by scripts/make-prompts.sh with:"
  echo "  $(espeak-ng --version | head -n 1 | sed "s/ *Data at:.*//")"
  echo "  $(sox --version 2>&1 | head -n 1)"
  for f in hold apology goodbye repeat recording-notice; do
    n=$(wc -c < "$out/$f.ulaw")
    echo "  $f.ulaw: $n bytes = $((n / 8)) ms"
  done
} > "$out/VERSIONS.txt"
cat "$out/VERSIONS.txt"
