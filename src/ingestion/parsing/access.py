"""Reading one element of a pydicom dataset without changing the dataset."""

from __future__ import annotations

from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset


def peek(dataset: Dataset, tag: int) -> DataElement | None:
    """Return the element at ``tag`` decoded, without storing the decoded form.

    A raw element left in the dataset stays raw, so a writer can still copy its bytes.
    """
    item = dataset.get_item(tag)
    if isinstance(item, RawDataElement):
        return convert_raw_data_element(item, encoding=dataset._character_set, ds=dataset)
    return item


__all__ = ["peek"]
