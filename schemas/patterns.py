"""Regular expressions the generation grammar uses in place of JSON Schema `format`s.

xgrammar's own `format: date` accepts impossible dates such as 2023-02-30 and 0000-01-01 (and
its date-time a 60th second), which no Python or Arrow value holds; these patterns admit
exactly what converts, so every constrained output becomes a typed value.

Our `time` is a time of day, HH:MM[:SS[.ffffff]], without an offset (Arrow's time64 has none);
our `date-time` is a date, "T", such a time and an optional offset (Z or +HH:MM): one without an
offset is read as UTC. Both are stricter than RFC 3339's, never looser.
"""

_DAYS = (
    r"{y}-(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])"
    r"|{y}-(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    r"|{y}-02-(0[1-9]|1[0-9]|2[0-8])"
    r"|([0-9]{{2}}(0[48]|[2468][048]|[13579][26])|{leap})-02-29"
)
# Years 0001-9999 only (Python's date and datetime have no year 0, nor a Pydantic date field).
_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_CENTURIES = "([2468][048]|[13579][26]|0[48])00"
DATE_PATTERN = "^(" + _DAYS.format(y=_YEAR, leap=_LEAP_CENTURIES) + ")$"
# Seconds and their fraction as two alternatives, not nested optional groups: xgrammar 0.2.9
# compiles (:SS(\.f{1,6})?)? so that it also accepts "00:000".
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]|:[0-5][0-9]\.[0-9]{1,6})?"
TIME_PATTERN = f"^{_CLOCK}$"
DATETIME_PATTERN = (
    "^(" + _DAYS.format(y=_YEAR, leap=_LEAP_CENTURIES) + ")"
    + f"T{_CLOCK}(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
