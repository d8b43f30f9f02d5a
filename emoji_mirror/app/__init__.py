"""The Streamlit app's helpers: cached loaders, WebRTC settings, the results tables and the background training jobs."""
