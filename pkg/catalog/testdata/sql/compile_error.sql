SELECT 'before the error';
SELEC 'missing T';
