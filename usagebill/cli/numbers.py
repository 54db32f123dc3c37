"""Commands whose arguments are numbers: ``-1`` is a value (refused with the rule's message,
"amount must be positive, not -1"), not an unknown option ("No such option: -1")."""

# Click then passes tokens that are no option of the command on as arguments; the command's
# own options (--id, --json, ...) are parsed as before.
NUMBERS = {"ignore_unknown_options": True}
