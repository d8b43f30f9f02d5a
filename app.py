"""Emoji Mirror's entry point (`streamlit run app.py`): the page layout and the navigation between its pages."""

import streamlit as st

# Each page's title and icon name its browser tab; the layout is set once, here, for all of them. (A pages/ folder also
# puts Streamlit in its older multipage mode until this file first runs: open the app at its root URL, not a page's.)
st.set_page_config(layout="wide")
st.navigation(
    [
        st.Page("pages/live_mirror.py", title="Live mirror", icon="🪞", default=True),
        st.Page("pages/photo.py", title="Photo", icon="📷"),
        st.Page("pages/compare.py", title="Compare models", icon="📊"),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
    ]
).run()
