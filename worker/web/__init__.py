"""HTML views: the report page and the dashboard. Self-contained: inline CSS and SVG, no CDN."""
