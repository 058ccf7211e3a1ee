"""Regular expressions the generation grammar uses in place of JSON Schema `format`s.

xgrammar's own `format: date` accepts impossible dates such as 2023-02-30; this pattern admits
exactly the calendar dates (leap years included), so every constrained output parses as a date.
"""

DATE_PATTERN = (
    r"^([0-9]{4}-(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])"
    r"|[0-9]{4}-(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|[0-9]{4}-02-(0[1-9]|1[0-9]|2[0-8])"
    r"|([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)-02-29)$"
)
