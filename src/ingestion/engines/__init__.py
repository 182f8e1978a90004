"""The two engines that apply Annex E to one instance: the byte engine (its walk, the
value actions and the Part 10 writer) and the pydicom engine (its walk and streamed
writer). :class:`src.ingestion.deidentifier.Deidentifier` chooses between them."""
