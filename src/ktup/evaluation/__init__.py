"""Evaluation: full-ranking recommendation metrics, KG link prediction, named protocols."""

from ktup.evaluation.link_prediction import LinkPredictionResult, evaluate_link_prediction  # noqa: F401
from ktup.evaluation.metrics import METRICS, ranking_metrics, topk_metrics  # noqa: F401
from ktup.evaluation.protocols import PROTOCOLS, Protocol, get_protocol  # noqa: F401
from ktup.evaluation.ranking import RankingResult, evaluate_recommendation  # noqa: F401
