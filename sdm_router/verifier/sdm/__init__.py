"""SDM estimator: adaptor, exact exemplar index, SDM activation, nested calibration, artifact.

An independent implementation of reexpress-sdm 0.4.8's numerical contract (see docs/sdm.md).
"""

from .errors import ArtifactError, DatasetError, SDMConfigurationError, SDMError
from .model import SDMModel
from .scores import NearestExemplar, SDMRowScore, SDMScores
from .training import TrainingConfig, train_model

__all__ = [
    "ArtifactError",
    "DatasetError",
    "NearestExemplar",
    "SDMConfigurationError",
    "SDMError",
    "SDMModel",
    "SDMRowScore",
    "SDMScores",
    "TrainingConfig",
    "train_model",
]
