"""What people read: the findings tables, the switch pages, the plots, report.html, the
terminal's tables and the reference pages of docs/."""
