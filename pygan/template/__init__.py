"""The template system: the smallest complete pygan system (models, trainer, evaluation, command), the starting
point of a new one. docs/add-a-system.md walks through it; tests/test_template.py trains it."""

from pygan.template.evaluate import CHECKPOINT, evaluate, load_generator
from pygan.template.models import TemplateDiscriminator, TemplateGenerator
from pygan.template.trainer import TemplateConfig, TemplateTrainer

__all__ = ["CHECKPOINT", "evaluate", "load_generator", "TemplateDiscriminator", "TemplateGenerator", "TemplateConfig",
           "TemplateTrainer"]
