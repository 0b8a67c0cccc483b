"""One module per dashboard page; ``dashboards/app.py`` routes to them with st.navigation."""
