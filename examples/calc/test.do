# Build calc and check its output on a few inputs. The summary and any
# failure go to stderr, because redo would store stdout as the target "test".
redo-ifchange calc VERSION

passed=0
failed=0

# report COMMAND_LINE STREAM EXPECTED_STATUS EXPECTED STATUS ACTUAL: count
# a check as passed or failed, and on failure print what differed.
report() {
    command_line=$1 stream=$2 expected_status=$3 expected=$4 status=$5 actual=$6
    if [ "$status" -eq "$expected_status" ] && [ "$actual" = "$expected" ]; then
        passed=$((passed + 1))
        return
    fi
    failed=$((failed + 1))
    printf 'FAIL: %s\n' "$command_line" >&2
    printf '  expected exit status %s and %s:\n%s\n' "$expected_status" "$stream" "$expected" >&2
    printf '  got exit status %s and %s:\n%s\n' "$status" "$stream" "$actual" >&2
}

# Print a command and its arguments, each argument in single quotes.
quote_command() {
    printf '%s' "$1"
    shift
    printf " '%s'" "$@"
}

# check_output EXPECTED COMMAND...: COMMAND must exit with status 0 and
# print EXPECTED on stdout.
check_output() {
    expected=$1
    shift
    status=0
    actual=$("$@") || status=$?
    report "$(quote_command "$@")" stdout 0 "$expected" "$status" "$actual"
}

# check_error EXPECTED COMMAND...: COMMAND must exit with status 1 and
# print EXPECTED on stderr.
check_error() {
    expected=$1
    shift
    status=0
    actual=$("$@" 2>&1 >/dev/null) || status=$?
    report "$(quote_command "$@")" stderr 1 "$expected" "$status" "$actual"
}

# Feed each argument to calc as one line of standard input.
calc_stdin() {
    printf '%s\n' "$@" | ./calc
}

check_output 7 ./calc '1 + 2 * 3'
check_output 9 ./calc '(1 + 2) * 3'
check_output 3.5 ./calc '7 / 2'
check_output 6 ./calc '-(4 - 6) * +3'
check_output 0.3 ./calc '0.1 + 0.2'
check_output 0 ./calc '-0'
check_output "$(printf '2\n2.5')" ./calc '1 + 1' '10 / 4'
check_output "$(printf '2\n2.5')" calc_stdin '1 + 1' '' '10 / 4'
check_output "calc $(cat VERSION)" ./calc --version

check_error 'calc: argument 1, column 3: division by zero' ./calc '1 / 0'
check_error "calc: argument 1, column 11: expected ')', found the end of the input" ./calc '2 * (3 + 4'
check_error "calc: argument 1, column 3: expected an operator, found a number" ./calc '1 2'
check_error "calc: argument 1, column 3: invalid character '\$'" ./calc '3 $ 4'
check_error 'calc: argument 1, column 3: invalid byte 0xC3' ./calc "$(printf '1 \303\251')"
check_error 'calc: argument 1, column 7: result out of range' ./calc '1e308 * 10'
check_error "calc: line 2, column 1: expected a number or '(', found ')'" calc_stdin '1' ') 2'

# calc limits nesting so that deep input cannot overflow its stack.
too_deep=$(printf '%1001s' '' | tr ' ' '(')
check_error 'calc: argument 1, column 1001: expression nested too deeply' ./calc "$too_deep"

if [ "$failed" -ne 0 ]; then
    echo "test: $failed of $((passed + failed)) checks failed" >&2
    exit 1
fi
echo "test: all $passed checks passed" >&2
