SELECT 'bye';
.exit 3
