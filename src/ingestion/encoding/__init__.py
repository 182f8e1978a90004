"""PS3.5 and PS3.10 bytes: data elements, VRs, the data dictionary, the structure check
and deflate. Nothing here imports pydicom; the engines and the parser stand on it."""
