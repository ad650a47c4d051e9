"""Dataset sources → (X, y, class names), validated, plus the seeded stratified split."""

from components.data.dataset import Dataset
from components.data.sources import load_dataset
from components.data.split import stratified_split

__all__ = ["Dataset", "load_dataset", "stratified_split"]
