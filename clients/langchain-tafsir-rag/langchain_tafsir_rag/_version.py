from importlib import metadata

try:
    __version__ = metadata.version("langchain-tafsir-rag")
except metadata.PackageNotFoundError:  # run from the source folder, not installed
    __version__ = "0+unknown"
