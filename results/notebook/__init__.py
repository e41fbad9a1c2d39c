"""What a hand-in notebook's cells call: ``from hpsearch.results import notebook as hn``.

``hpsearch notebook NAME ... --to FILE.ipynb`` (:func:`hpsearch.notebook`) writes a
notebook of these calls for one search or several that answer one part of the
assignment, runs it in a fresh kernel and saves it with its outputs. The same
functions serve a notebook a student writes by hand:

- the data (:mod:`.data`): :func:`describe_data`, :func:`data_summary`,
  :func:`data_figure` (a class grid, class counts, the pixel histogram and the mean
  image per class; the target over time, feature histograms, correlations and
  autocorrelation; text lengths, class balance and frequent tokens);
- the search and its best model (:mod:`.search`): :func:`spec_yaml`,
  :func:`space_table`, :func:`stop_reasons`, :func:`show` (a figure of
  ``search.figures()``), :func:`choice_table`, :func:`model_summary`,
  :func:`test_metrics`, :func:`confusion`, :func:`per_class`, :func:`misclassified`,
  :func:`export_figure`, :func:`grad_norms`, :func:`filters`;
- several searches: :func:`compare_curves`, :func:`compare_table`,
  :func:`batch_norm_twins`;
- :func:`discussion` (:mod:`.discuss`), written from the numbers.

Test numbers and test-split figures are the export's: the test split is evaluated
once, by ``hpsearch export``, never by a notebook.
"""

import warnings

# tqdm.auto (imported by Optuna and MLflow) warns in every kernel without ipywidgets;
# the notebook shows no progress bars, so the warning is noise in its outputs
warnings.filterwarnings("ignore", message="IProgress not found")

from hpsearch.results.notebook.data import (  # noqa: E402
    data_figure,
    data_figures,
    data_kind,
    data_summary,
    describe_data,
)
from hpsearch.results.notebook.discuss import discussion  # noqa: E402
from hpsearch.results.notebook.search import (  # noqa: E402
    batch_norm_twins,
    choice_table,
    compare_curves,
    compare_table,
    confusion,
    export_figure,
    filters,
    grad_norms,
    misclassified,
    model_summary,
    per_class,
    show,
    space_table,
    spec_yaml,
    stop_reasons,
    test_metrics,
)

__all__ = ["batch_norm_twins", "choice_table", "compare_curves", "compare_table", "confusion",
           "data_figure", "data_figures", "data_kind", "data_summary", "describe_data",
           "discussion", "export_figure", "filters", "grad_norms", "misclassified",
           "model_summary", "per_class", "show", "space_table", "spec_yaml", "stop_reasons",
           "test_metrics"]
