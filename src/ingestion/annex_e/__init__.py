"""PS3.15 Annex E as data and decisions: the profile and its options, the Table E.1-1
rules (private attributes included), IOD attribute types, dummy values, codes, the
De-identification Method marking, keyed pseudonyms, the action report, ``explain`` and
the identifier scan. A new profile option lands here."""
