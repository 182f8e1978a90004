"""The account of a run or a receive session: the journal, the state folder, provenance,
the summary, the manifest and reports, and the crosswalk. Shared by every local shell,
so that ``network`` does not reach into the runner."""
