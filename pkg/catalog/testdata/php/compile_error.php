<?php
echo "before the error\n";
function broken( {
}
