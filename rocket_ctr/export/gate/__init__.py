"""The export gate: measure a candidate export and the one being served on the same rows
(``measure``), judge them by the user's criteria (``criteria``) and promote the candidate only
if it passes (``promotion``)."""
