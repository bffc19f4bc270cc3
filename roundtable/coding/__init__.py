"""Coding messages: codebooks, judge definitions and prompts, verdict validation, the
rule-based lexicon coder and the deterministic ``xref`` flag.

* :mod:`~roundtable.coding.codebook`: flags from ``judges/codebook.toml`` (or your own);
* :mod:`~roundtable.coding.judge`: judge files, the prompt for one message, retries;
* :mod:`~roundtable.coding.verdict`: strict parsing of an answer into a verdict;
* :mod:`~roundtable.coding.views`: what a judge may see of a message;
* :mod:`~roundtable.coding.lexicon`: the offline rule-based coder;
* :mod:`~roundtable.coding.xref`: which peers a message names.

Nothing here touches the database or the network.
"""
