"""Human validation: stratified samples of coded messages and blind review by people.

* :mod:`roundtable.review.sampling`: allocation and draw (pure functions);
* :mod:`roundtable.review.samples`: the population of coded messages; storing a sample;
* :mod:`roundtable.review.session`: one coder working through one sample
  (:class:`~roundtable.review.session.ReviewSession`), every action saved at once;
* :mod:`roundtable.review.status`: progress per sample and coder; disagreements with the
  judges.
"""
