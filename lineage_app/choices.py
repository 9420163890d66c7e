"""Enumerations of lineage."""

from django.db import models


class DatasetRole(models.TextChoices):
    TRAIN = "train", "Training"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"
    EVALUATION = "evaluation", "Evaluation"


class ParentRelation(models.TextChoices):
    FINE_TUNED_FROM = "fine_tuned_from", "Fine-tuned from"
    DISTILLED_FROM = "distilled_from", "Distilled from"
    QUANTIZED_FROM = "quantized_from", "Quantized from"
    DERIVED_FROM = "derived_from", "Derived from"


class Containment(models.TextChoices):
    CONTAINS = "contains", "Contains the commit"
    DOES_NOT_CONTAIN = "does_not_contain", "Does not contain the commit"
    UNKNOWN = "unknown", "Unknown"
