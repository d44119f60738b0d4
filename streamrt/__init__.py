"""streamrt: a real-time streaming video / vision-language runtime.

The package root only carries the version; subsystems live in their own subpackages
(`streamrt.synth`, `streamrt.ingest`, `streamrt.cache`, `streamrt.kernels`, `streamrt.models`,
`streamrt.engine`, `streamrt.bench`, ...) and are imported explicitly by whoever needs them, so that
`import streamrt` stays cheap and pulls in neither torch nor PyAV.
"""

__version__ = "0.1.0"
