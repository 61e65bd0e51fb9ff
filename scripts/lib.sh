# Sourced by the scripts in this folder, from the repository root.

# whole_seconds SCRIPT VALUE: a usage error (exit 2) unless VALUE is a whole number of
# seconds.
whole_seconds() {
    case $2 in
    '' | *[!0-9]*)
        echo "$1: SECONDS must be a whole number, not '$2'" >&2
        exit 2
        ;;
    esac
}
