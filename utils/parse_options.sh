#!/usr/bin/env bash
# Source this after defining a script's defaults:  . utils/parse_options.sh
# Each `--some-name value` (or --some_name value) overrides the shell variable
# some_name, which must already exist, so typos fail loudly. `--help` prints the
# script's header comment and its options with their current values, taken from
# the variables themselves (one place for option help). Positional arguments are
# left in "$@".

__parse_options_usage() {
  # The calling script's leading comment block is its help text.
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
  echo "Options (current values):"
  local line name
  while IFS= read -r line; do
    # Lines `name=value  # comment` at top level define options; show them with their comments.
    if [[ $line =~ ^([a-zA-Z_][a-zA-Z0-9_]*)=[^\ ]*(\ +#\ *(.*))?$ ]]; then
      name=${BASH_REMATCH[1]}
      printf '  --%-22s %-24s %s\n' "$name" "'${!name-}'" "${BASH_REMATCH[3]}"
    fi
  done < "$0"
}

while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h) __parse_options_usage; exit 0 ;;
    --*=*)
      echo "$0: write '--name value', not '$1'" >&2; exit 1 ;;
    --*)
      __name=${1#--}; __name=${__name//-/_}
      if [ -z "${!__name+set}" ]; then
        echo "$0: invalid option $1 (no variable '${__name}' in this script; see --help)" >&2; exit 1
      fi
      if [ $# -lt 2 ]; then
        echo "$0: option $1 needs a value" >&2; exit 1
      fi
      # Booleans must stay true/false so that `if $flag; then` keeps working.
      if [[ ${!__name} == true || ${!__name} == false ]] && [[ $2 != true && $2 != false ]]; then
        echo "$0: option $1 takes true or false, got '$2'" >&2; exit 1
      fi
      printf -v "$__name" '%s' "$2"
      shift 2 ;;
    *) break ;;
  esac
done
unset __name
true
