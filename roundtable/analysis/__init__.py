"""Analysis of coded corpora: behavioural profiles, comparisons of run sets, flag tests
across models, compensation after crashes, isolation against group runs, rates by round.

Every analysis reads its codes from one :class:`~roundtable.analysis.source.CodeSource`
(an adjudication by default, or one rater) and works on plain
:class:`~roundtable.analysis.source.CodedMessage` records, so the computations are pure and
testable without a database.
"""
