"""The DICOM network shells: a de-identifying C-STORE receiver and a sender.

:mod:`src.network.scp` receives (pynetdicom) and hands each instance to
:mod:`src.network.intake`, which runs it through the same per-instance pipeline as
``medpipe run`` and stores it durably before the sender is told "success";
:mod:`src.network.forward` sends completed studies on. :mod:`src.network.send` ships
de-identified outputs to a DICOM node (C-STORE, :mod:`src.network.scu`) or a DICOMweb
origin (STOW-RS, :mod:`src.network.stow`).
"""
