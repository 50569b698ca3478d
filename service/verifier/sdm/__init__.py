"""SDM estimator: adaptor, exact exemplar index, SDM activation, nested calibration, artifact.

An independent implementation of reexpress-sdm 0.4.8's numerical contract
(see docs/sdm.md and /work/shared/design/SDM.md).
"""

from .errors import ArtifactError, ConfigurationError, DatasetError, SDMError
from .model import SDMModel
from .scorer import SDMScorer
from .scores import NearestExemplar, SDMRowScore, SDMScores
from .training import TrainingConfig, train_model

__all__ = [
    "ArtifactError",
    "ConfigurationError",
    "DatasetError",
    "NearestExemplar",
    "SDMError",
    "SDMModel",
    "SDMRowScore",
    "SDMScorer",
    "SDMScores",
    "TrainingConfig",
    "train_model",
]
