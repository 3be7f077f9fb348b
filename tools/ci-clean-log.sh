#!/usr/bin/env bash
# Cleans a saved CI log of kiln's test run so it reads like a terminal transcript and greps well:
# strips ANSI colour and other escape sequences (vitest colours its output when FORCE_COLOR is
# set, as CI runners do), carriage-return progress redraws (only the last redraw of a line is
# kept), CRLF line ends, and leading timestamps (ISO-8601 such as 2026-12-03T16:01:02.123Z, as CI
# runners prefix every line, and [HH:MM:SS]). vitest's own durations (12ms, 4.21s) are kept.
#
#   tools/ci-clean-log.sh <log> [out]     writes to out, else to stdout
#
# See docs/ci-failures.md for how to triage a failure from the cleaned log.
set -euo pipefail

usage() {
  echo "usage: tools/ci-clean-log.sh <log> [out]" >&2
  echo "  strips ANSI escapes, carriage-return redraws and leading timestamps from a saved CI log;" >&2
  echo "  writes the result to <out>, or to stdout" >&2
}

if [ "$#" -eq 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }; then
  usage
  exit 0
fi
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  usage
  exit 2
fi
log=$1
out=${2:-}
if [ ! -f "$log" ] || [ ! -r "$log" ]; then
  echo "tools/ci-clean-log.sh: cannot read $log" >&2
  usage
  exit 2
fi
if [ -n "$out" ] && [ "$out" -ef "$log" ]; then
  echo "tools/ci-clean-log.sh: out must not be the log itself" >&2
  exit 2
fi

# Byte-wise matching, whatever the locale; the control characters are put in as literals so
# the expressions need nothing beyond POSIX extended regular expressions.
export LC_ALL=C
ESC=$(printf '\033')
CR=$(printf '\r')
BEL=$(printf '\007')

script="
s/${CR}\$//
s/.*${CR}//
s/${ESC}\][^${BEL}${ESC}]*(${BEL}|${ESC}\\\\)//g
s#${ESC}\[[0-?]*[ -/]*[@-~]##g
s/${ESC}[@-_]//g
s/${ESC}[()][0-9A-Za-z]//g
s/^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?[[:space:]]?//
s/^\[[0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]+)?\][[:space:]]?//
"

if [ -n "$out" ]; then
  sed -E "$script" "$log" > "$out"
else
  sed -E "$script" "$log"
fi
