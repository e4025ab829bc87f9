"""Local emulators of stores that cannot run here (Pinecone, Weaviate), driven by their official SDKs in
the tests."""
